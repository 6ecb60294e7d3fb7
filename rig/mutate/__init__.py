"""Mutation testing of the suite: broken firmware profiles made mechanically, and which tests kill them."""
