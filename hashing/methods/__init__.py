"""Trainable cross-modal hash methods with their own networks (``dsmhn``, ``clip4hashing``).

Each method is a subpackage; nothing is imported here, so importing one method does not pull in
another method's dependencies.
"""
