"""wanka.cli"""
