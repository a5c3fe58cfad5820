//! The gradient-flow report (`gradscope report RUN_DIR`); being written.
