"""talkgen chat: the render pipeline as a conversation in the terminal, models kept loaded."""
