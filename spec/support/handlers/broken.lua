-- A handler module that fails while loading.
error("broken at load time")
