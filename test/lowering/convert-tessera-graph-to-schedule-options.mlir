// Pass options out of bounds, of the wrong type, unknown, or in a malformed pipeline: one line naming the
// pass and the option, before any input is read (this file holds no IR), and nothing after it on stderr
// (a traceback never holds that line).

// RUN: not tessera-opt %s -p 'convert-tessera-graph-to-schedule{max-seq-len=-5}' 2>&1 | FileCheck %s --check-prefix=NEGATIVE
// NEGATIVE: tessera-opt: error: convert-tessera-graph-to-schedule: option 'max-seq-len' must be an integer in [1, 2147483647], got -5
// NEGATIVE-NOT: {{.}}

// RUN: not tessera-opt %s -p 'convert-tessera-graph-to-schedule{max-seq-len=2147483648}' 2>&1 | FileCheck %s --check-prefix=HUGE
// HUGE: tessera-opt: error: convert-tessera-graph-to-schedule: option 'max-seq-len' must be an integer in [1, 2147483647], got 2147483648
// HUGE-NOT: {{.}}

// RUN: not tessera-opt %s -p 'convert-tessera-graph-to-schedule{chunk-size=0}' 2>&1 | FileCheck %s --check-prefix=CHUNK
// CHUNK: tessera-opt: error: convert-tessera-graph-to-schedule: option 'chunk-size' must be an integer in [1, 2147483647], got 0
// CHUNK-NOT: {{.}}

// RUN: not tessera-opt %s -p 'convert-tessera-graph-to-schedule{max-seq-len=true}' 2>&1 | FileCheck %s --check-prefix=BOOL
// BOOL: tessera-opt: error: convert-tessera-graph-to-schedule: option 'max-seq-len' must be an integer in [1, 2147483647], got True
// BOOL-NOT: {{.}}

// RUN: not tessera-opt %s -p 'convert-tessera-graph-to-schedule{max-seq-len=abc}' 2>&1 | FileCheck %s --check-prefix=TYPE
// TYPE: tessera-opt: error: convert-tessera-graph-to-schedule: option 'max-seq-len' expects int, got 'abc'
// TYPE-NOT: {{.}}

// RUN: not tessera-opt %s -p 'convert-tessera-graph-to-schedule{mode=sideways}' 2>&1 | FileCheck %s --check-prefix=MODE
// MODE: tessera-opt: error: convert-tessera-graph-to-schedule: option 'mode' must be one of both, prefill, decode, got 'sideways'
// MODE-NOT: {{.}}

// RUN: not tessera-opt %s -p 'convert-tessera-graph-to-schedule{max_seq_len=8 bogus=1}' 2>&1 | FileCheck %s --check-prefix=UNKNOWN
// UNKNOWN: tessera-opt: error: convert-tessera-graph-to-schedule: unknown option 'bogus' (options: mode, max-seq-len, ssm-state-dtype, chunk-size, activation-dtype, kv-cache-dtype)
// UNKNOWN-NOT: {{.}}

// RUN: not tessera-opt %s -p 'convert-tessera-graph-to-schedule{max-seq-len=8' 2>&1 | FileCheck %s --check-prefix=BRACE
// BRACE: tessera-opt: error: -p 'convert-tessera-graph-to-schedule{max-seq-len=8': column 48: Malformed pass arguments, expected either a space or `}` here
// BRACE-NOT: {{.}}

// RUN: not tessera-opt %s -p 'convert-tessera-graph-to-schedule},tessera-schedule-plan-buffers' 2>&1 | FileCheck %s --check-prefix=SYNTAX
// SYNTAX: tessera-opt: error: -p 'convert-tessera-graph-to-schedule},tessera-schedule-plan-buffers': column 34: Expected a comma or pass arguments here
// SYNTAX-NOT: {{.}}

// RUN: not tessera-opt %s -p 'convert-tessera-graph-to-schedul' 2>&1 | FileCheck %s --check-prefix=PASS
// PASS: tessera-opt: error: -p: unknown pass 'convert-tessera-graph-to-schedul'
// PASS-NOT: {{.}}
