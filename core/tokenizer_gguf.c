/* tokenizer_gguf: being written */
