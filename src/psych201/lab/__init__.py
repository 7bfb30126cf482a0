"""psych201.lab"""
