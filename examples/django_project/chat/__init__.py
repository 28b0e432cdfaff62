"""The example's chat app: a history per conversation, freed when the conversation leaves."""
