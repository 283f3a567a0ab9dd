/* tokenizer_json: being written */
