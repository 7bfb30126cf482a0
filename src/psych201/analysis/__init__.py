"""psych201.analysis"""
