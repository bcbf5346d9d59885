"""The decision core: scores, reasons, segments and actions from features; pure, no IO."""
