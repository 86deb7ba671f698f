"""Where each dataset's files come from: readers that turn files (or a package's copy) into
tensors and texts. Task DataModules build their batches on top; nothing here is task-specific."""
