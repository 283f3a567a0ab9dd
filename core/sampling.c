/* sampling: being written */
