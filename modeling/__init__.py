"""The Genie model in torch: ST-transformer, ST-ViViT VQ-VAE tokenizer, latent action model, MaskGIT dynamics."""
