"""psych201.results"""
