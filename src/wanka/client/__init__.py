"""wanka.client"""
