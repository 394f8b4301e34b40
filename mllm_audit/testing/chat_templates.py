"""Chat templates as published upstream, for the tiny models (each with where it was read).

Only the templates' text is used: the tiny models' tokenizers carry the same special tokens.
"""

# Qwen2-VL-7B-Instruct / Qwen2.5-VL-7B-Instruct chat_template.json (the same template in both repos).
QWEN2_VL = (
    "{% set image_count = namespace(value=0) %}{% set video_count = namespace(value=0) %}{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}<|im_start|>{{ message['role'] }}\n{% if message['content'] is string %}{{ message['content'] }}"
    "<|im_end|>\n{% else %}{% for content in message['content'] %}{% if content['type'] == 'image' or 'image' in "
    "content or 'image_url' in content %}{% set image_count.value = image_count.value + 1 %}{% if add_vision_id %}"
    "Picture {{ image_count.value }}: {% endif %}<|vision_start|><|image_pad|><|vision_end|>{% elif content['type'] "
    "== 'video' or 'video' in content %}{% set video_count.value = video_count.value + 1 %}{% if add_vision_id %}"
    "Video {{ video_count.value }}: {% endif %}<|vision_start|><|video_pad|><|vision_end|>{% elif 'text' in content %}"
    "{{ content['text'] }}{% endif %}{% endfor %}<|im_end|>\n{% endif %}{% endfor %}{% if add_generation_prompt %}"
    "<|im_start|>assistant\n{% endif %}"
)

LLAVA = (
    "{% for m in messages %}{{ m['role'] | upper }}: "
    "{% for c in m['content'] %}{% if c['type'] == 'image' %}<image>\n{% endif %}{% endfor %}"
    "{% for c in m['content'] %}{% if c['type'] == 'text' %}{{ c['text'] }} {% endif %}{% endfor %}"
    "{% endfor %}{% if add_generation_prompt %}ASSISTANT:{% endif %}"
)

LLAVA_NEXT = LLAVA
LLAVA_ONEVISION = LLAVA
GEMMA3 = LLAVA.replace("<image>", "<start_of_image>")
PALIGEMMA = LLAVA
IDEFICS3 = LLAVA
MLLAMA = LLAVA.replace("<image>", "<|image|>")
INTERNVL = LLAVA.replace("<image>", "<IMG_CONTEXT>")
MISTRAL3 = LLAVA.replace("<image>", "[IMG]")
QWEN3_VL = QWEN2_VL
