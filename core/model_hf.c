/* model_hf: being written */
