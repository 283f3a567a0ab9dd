/* generate: being written */
