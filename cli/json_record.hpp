// --json: one JSON object per backup, on one line of stdout.
#pragma once

#include <optional>
#include <sqlite_backup/sqlite_backup.hpp>
#include <string>
#include <string_view>

#include "exit_code.hpp"

namespace sqlite_backup::cli {

// `text` as a JSON string literal, quotes included. Valid UTF-8 passes through; control
// characters are escaped; each byte that is not part of valid UTF-8 (paths may hold any
// bytes) becomes the escape of a lone surrogate, U+DC80-U+DCFF, as Python's surrogateescape
// decodes it: the output stays JSON, and the path's bytes can be had back.
std::string json_string(std::string_view text);

// The record of one backup: its Report on success, its Failure otherwise.
// `destination` is where it was (or would have been) written; empty when unknown.
std::string json_record(const std::string& source, const std::string& destination,
                        const Report* report, const Failure* failure);

}  // namespace sqlite_backup::cli
