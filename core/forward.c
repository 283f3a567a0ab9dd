/* forward: being written */
