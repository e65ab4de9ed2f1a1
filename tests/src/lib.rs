//! The test package has no library of its own: its tests are the [[test]] targets.
