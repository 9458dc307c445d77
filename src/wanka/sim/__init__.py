"""wanka.sim"""
