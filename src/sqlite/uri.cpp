#include "sqlite/uri.hpp"

#include <string_view>

namespace sqlite_backup::sql {

std::string file_uri(const std::filesystem::path& path, const std::string& query) {
  static constexpr std::string_view kHex = "0123456789ABCDEF";
  const std::string absolute = std::filesystem::absolute(path).lexically_normal().native();
  std::string uri = "file:";
  for (const unsigned char c : absolute) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
                            c == '~' || c == '/';
    if (unreserved) {
      uri += static_cast<char>(c);
    } else {
      uri += '%';
      uri += kHex[c >> 4];
      uri += kHex[c & 0xF];
    }
  }
  if (!query.empty()) uri += "?" + query;
  return uri;
}

}  // namespace sqlite_backup::sql
