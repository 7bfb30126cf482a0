"""psych201.scoring"""
