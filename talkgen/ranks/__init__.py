"""Distributed rendering: the torchrun launch, the rank worker loop, the ranks' timing, and
the one-rank group for a back end that calls torch.distributed in talkgen's own process.

The only package in talkgen that imports torch.distributed (a module-level import of it
once took a multi-service GPU stack down at start-up), and only inside functions.
"""
