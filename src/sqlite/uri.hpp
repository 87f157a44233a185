#pragma once

#include <filesystem>
#include <string>

namespace sqlite_backup::sql {

// A "file:" URI for `path` (made absolute) that SQLite parses back to exactly that path:
// every byte outside the unreserved set and '/' is percent-encoded, so '?', '#', '%',
// spaces and non-ASCII names survive. `query` ("k=v&k2=v2") is appended when not empty.
std::string file_uri(const std::filesystem::path& path, const std::string& query = {});

}  // namespace sqlite_backup::sql
