"""wanka.backends"""
