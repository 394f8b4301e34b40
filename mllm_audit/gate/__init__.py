"""The release gate: a policy read from YAML, evaluated against a run record, written as JUnit and a step summary."""
