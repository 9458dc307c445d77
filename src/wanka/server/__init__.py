"""wanka.server"""
