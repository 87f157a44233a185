#include "json_record.hpp"

#include <fmt/core.h>

#include <chrono>

namespace sqlite_backup::cli {
namespace {

// Length of the valid UTF-8 sequence at the start of `text`, or 0 if there is none.
std::size_t utf8_sequence_length(std::string_view text) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  const unsigned char lead = byte(0);
  std::size_t length = 0;
  std::uint32_t code_point = 0;
  if (lead < 0x80) return 1;
  if (lead >= 0xc2 && lead <= 0xdf) {
    length = 2;
    code_point = lead & 0x1fU;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    length = 3;
    code_point = lead & 0x0fU;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    length = 4;
    code_point = lead & 0x07U;
  } else {
    return 0;
  }
  if (text.size() < length) return 0;
  for (std::size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xc0U) != 0x80U) return 0;
    code_point = (code_point << 6) | (byte(i) & 0x3fU);
  }
  const bool overlong =
      (length == 3 && code_point < 0x800) || (length == 4 && code_point < 0x10000);
  const bool surrogate = code_point >= 0xd800 && code_point <= 0xdfff;
  if (overlong || surrogate || code_point > 0x10ffff) return 0;
  return length;
}

const char* verified_name(Verify verify) {
  switch (verify) {
    case Verify::none:
      return "none";
    case Verify::quick:
      return "quick";
    case Verify::full:
      return "full";
  }
  return "none";
}

}  // namespace

std::string json_string(std::string_view text) {
  std::string out = "\"";
  while (!text.empty()) {
    const char c = text.front();
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        } else if (const std::size_t length = utf8_sequence_length(text); length > 0) {
          out.append(text.substr(0, length));
          text.remove_prefix(length - 1);
        } else {
          // Python's surrogateescape: os.fsencode(json.loads(...)) gives the path's bytes back.
          out += fmt::format("\\u{:04x}", 0xdc00U + static_cast<unsigned char>(c));
        }
    }
    text.remove_prefix(1);
  }
  return out + "\"";
}

std::string json_record(const std::string& source, const std::string& destination,
                        const Report* report, const Failure* failure) {
  std::string out = "{\"source\":" + json_string(source);
  out +=
      ",\"destination\":" + (destination.empty() ? std::string("null") : json_string(destination));
  if (report != nullptr && failure == nullptr) {
    const double seconds = std::chrono::duration<double>(report->duration).count();
    out += fmt::format(
        ",\"bytes\":{},\"pages\":{},\"page_size\":{},\"attempts\":{},\"duration_s\":{:.6f},"
        "\"validated\":{},\"verified\":\"{}\",\"ok\":true",
        report->bytes, report->pages, report->page_size, report->attempts, seconds,
        report->validated ? "true" : "false", verified_name(report->verified));
  } else {
    const int exit_code = failure != nullptr ? failure->exit_code : kFailure;
    const std::string message = failure != nullptr ? failure->message : "unknown error";
    out += fmt::format(R"(,"ok":false,"exit_code":{},"error":{})", exit_code, json_string(message));
  }
  return out + "}";
}

}  // namespace sqlite_backup::cli
