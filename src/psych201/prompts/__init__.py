"""psych201.prompts"""
