/* gguf_write: being written */
