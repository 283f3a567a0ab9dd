/* model_gguf: being written */
