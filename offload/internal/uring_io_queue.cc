// The io_uring IoQueue: one ring of `depth` entries, the swap file registered as a fixed file,
// buffers registered on request, and one thread that waits for completions and hands them over in
// batches.
#include <liburing.h>
#include <sys/uio.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "offload/internal/io_queue.h"
#include "runtime/status.h"

namespace strata::offload::internal {
namespace {

constexpr uint64_t kStopUserData = ~uint64_t{0};
// The kernel's bound on one registered buffer.
constexpr int64_t kMaxRegisteredBytes = int64_t{1} << 30;

std::string RefusedText(int error_number, absl::string_view why = "") {
  const char* name = strerrorname_np(error_number);
  return absl::StrCat(name != nullptr ? name : "errno", ": ", std::strerror(error_number), why);
}

class UringIoQueue final : public IoQueue {
 public:
  UringIoQueue(int fd, int depth, IoCompletionHandler on_complete)
      : fd_(fd), depth_(depth), on_complete_(std::move(on_complete)) {}

  absl::Status Init() {
    if (const char* env = std::getenv("STRATA_IO_URING_DISABLE");
        env != nullptr && std::strcmp(env, "1") == 0) {
      return absl::PermissionDeniedError(RefusedText(EPERM, " [STRATA_IO_URING_DISABLE=1]"));
    }
    // The completion ring holds twice the depth, so completions never overflow it.
    if (int r = io_uring_queue_init(static_cast<unsigned>(depth_), &ring_, 0); r < 0) {
      return absl::Status(absl::ErrnoToStatusCode(-r), RefusedText(-r));
    }
    initialized_ = true;
    // A fixed file saves the kernel a file-table lookup per request; without it, plain fds work.
    fixed_file_ = io_uring_register_files(&ring_, &fd_, 1) == 0;
    completions_.resize(2 * static_cast<size_t>(depth_));
    cqes_.resize(completions_.size());
    thread_ = std::thread([this] { Reap(); });
    return absl::OkStatus();
  }

  ~UringIoQueue() override {
    Shutdown();
    if (initialized_) io_uring_queue_exit(&ring_);
  }

  void Prepare(int slot, const IoRequest& request) override {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    STRATA_CHECK(sqe != nullptr, "io_uring: more than ", depth_, " requests prepared");
    const int fd = fixed_file_ ? 0 : fd_;
    const auto bytes = static_cast<unsigned>(request.bytes);
    const int index = RegisteredIndex(request.buffer, request.bytes);
    if (request.op == IoOp::kRead) {
      if (index >= 0) {
        io_uring_prep_read_fixed(sqe, fd, request.buffer, bytes, request.file_offset, index);
      } else {
        io_uring_prep_read(sqe, fd, request.buffer, bytes, request.file_offset);
      }
    } else {
      if (index >= 0) {
        io_uring_prep_write_fixed(sqe, fd, request.buffer, bytes, request.file_offset, index);
      } else {
        io_uring_prep_write(sqe, fd, request.buffer, bytes, request.file_offset);
      }
    }
    if (fixed_file_) sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, static_cast<uint64_t>(slot));
  }

  void Submit() override {
    while (io_uring_sq_ready(&ring_) > 0) {
      const int r = io_uring_submit(&ring_);
      if (r >= 0 || r == -EINTR || r == -EAGAIN || r == -EBUSY) continue;
      STRATA_CHECK(false, "io_uring_submit: ", RefusedText(-r));
    }
  }

  absl::Status RegisterBuffer(void* data, int64_t bytes) override {
    char* p = static_cast<char*>(data);
    for (int64_t at = 0; at < bytes; at += kMaxRegisteredBytes) {
      buffers_.push_back(
          iovec{p + at, static_cast<size_t>(std::min(kMaxRegisteredBytes, bytes - at))});
    }
    if (registered_) io_uring_unregister_buffers(&ring_);
    registered_ = false;
    if (int r = io_uring_register_buffers(&ring_, buffers_.data(),
                                          static_cast<unsigned>(buffers_.size()));
        r < 0) {
      buffers_.clear();
      return absl::Status(
          absl::ErrnoToStatusCode(-r),
          absl::StrCat("io_uring_register_buffers of ", bytes, " bytes: ", RefusedText(-r),
                       r == -ENOMEM ? " (registered buffers count against RLIMIT_MEMLOCK "
                                      "for a process without CAP_IPC_LOCK)"
                                    : ""));
    }
    registered_ = true;
    return absl::OkStatus();
  }

  void Shutdown() override {
    if (!thread_.joinable()) return;
    io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
    STRATA_CHECK(sqe != nullptr, "io_uring: shutdown with the ring full");
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, kStopUserData);
    Submit();
    thread_.join();
  }

 private:
  // The registered buffer that holds [p, p + bytes), or -1.
  int RegisteredIndex(const char* p, int64_t bytes) const {
    if (!registered_) return -1;
    for (size_t i = 0; i < buffers_.size(); ++i) {
      const char* base = static_cast<const char*>(buffers_[i].iov_base);
      if (p >= base && p + bytes <= base + buffers_[i].iov_len) return static_cast<int>(i);
    }
    return -1;
  }

  void Reap() {
    bool stop = false;
    while (!stop) {
      io_uring_cqe* first = nullptr;
      if (int r = io_uring_wait_cqe(&ring_, &first); r < 0) {
        STRATA_CHECK(r == -EINTR, "io_uring_wait_cqe: ", RefusedText(-r));
        continue;
      }
      const unsigned n =
          io_uring_peek_batch_cqe(&ring_, cqes_.data(), static_cast<unsigned>(cqes_.size()));
      size_t count = 0;
      for (unsigned i = 0; i < n; ++i) {
        const uint64_t data = io_uring_cqe_get_data64(cqes_[i]);
        if (data == kStopUserData) {
          stop = true;
          continue;
        }
        completions_[count++] = IoCompletion{static_cast<int>(data), cqes_[i]->res};
      }
      io_uring_cq_advance(&ring_, n);
      if (count > 0) on_complete_(absl::MakeConstSpan(completions_.data(), count));
    }
  }

  int fd_;
  const int depth_;
  IoCompletionHandler on_complete_;
  io_uring ring_{};
  bool initialized_ = false;
  bool fixed_file_ = false;
  bool registered_ = false;
  std::vector<iovec> buffers_;
  std::vector<io_uring_cqe*> cqes_;  // preallocated: reaping allocates nothing
  std::vector<IoCompletion> completions_;
  std::thread thread_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<IoQueue>> MakeUringIoQueue(int fd, int depth,
                                                          IoCompletionHandler on_complete) {
  auto queue = std::make_unique<UringIoQueue>(fd, depth, std::move(on_complete));
  STRATA_RETURN_IF_ERROR(queue->Init());
  return std::unique_ptr<IoQueue>(std::move(queue));
}

}  // namespace strata::offload::internal
