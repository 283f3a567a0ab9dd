/* model_config: being written */
