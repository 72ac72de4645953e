"""talkgen: self-hosted talking-avatar video renderer."""

__version__ = "0.1.0"
