/* chat: being written */
