"""psych201.data"""
