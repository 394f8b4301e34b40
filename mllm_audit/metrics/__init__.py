"""Numbers from scores: intervals, bias summaries, disparity, edit metrics and generation-bias metrics,
each with its direction.
"""
