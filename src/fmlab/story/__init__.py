"""Story continuation (StoryDALL-E, reduced): styled-digit stories, a VQ-VAE, an autoregressive
image-token transformer with source-frame cross-attention, prompt-tuning (issue 23)."""
