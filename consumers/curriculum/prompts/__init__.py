"""The curriculum's prompts as files: system, one template and reply schema per stage, few-shot exemplars."""
