"""Remote inference: experts that call a Hugging Face inference server (HF's own, by repo id, or
any endpoint URL speaking the protocol) through huggingface_hub.InferenceClient."""
