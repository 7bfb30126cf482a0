"""psych201.simulate"""
