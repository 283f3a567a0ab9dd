/* gguf: being written */
