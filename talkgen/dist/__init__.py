"""Distributed rendering: the torchrun launch and the rank worker loop.

The only package in talkgen that imports torch.distributed (a module-level import of it
once took a multi-service GPU stack down at start-up), and only inside functions.
"""
