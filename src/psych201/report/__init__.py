"""psych201.report"""
