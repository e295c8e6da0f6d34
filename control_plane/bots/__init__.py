"""Bots: create, list, edit, delete, enable/disable, avatar, widget settings, allowed origins."""
