/*
 * depotsync-agent-service.exe: the Windows service host of the self-contained agent (docs/windows-agent.md).
 *
 * Node.js cannot answer the service control manager (StartServiceCtrlDispatcher needs a native thread that
 * the manager calls back), so the service runs this small host instead, which runs the agent as a child:
 *
 *   depotsync-agent-service.exe --agent C:\...\depotsync-agent.exe [--log FILE] [--stop-file FILE]
 *                               [--stop-timeout SECONDS] -- service run --dir C:\ProgramData\depotsync\agent
 *
 * - reports SERVICE_RUNNING once the first child is started;
 * - restarts the child when it exits while the service runs, after 1, 2, 4 ... 60 s (back to 1 s once a
 *   child ran a minute);
 * - on STOP or SHUTDOWN creates the stop file (its path is in the child's DEPOTSYNC_STOP_FILE; the agent
 *   polls for it and ends its loop), waits --stop-timeout seconds (default 20), then terminates the child;
 * - a job object kills the child should the host itself die;
 * - the child's stdout and stderr and the host's own lines go to the log file (default
 *   %ProgramData%\depotsync\agent-service.log, moved to .1 beyond 10 MiB when a child starts).
 *
 * Built by scripts/package-agent.mjs with mingw-w64, reproducibly (no timestamp, no build paths).
 */
#define WIN32_LEAN_AND_MEAN
#ifndef UNICODE
#define UNICODE
#endif
#include <windows.h>
#include <shellapi.h>
#include <stdio.h>
#include <wchar.h>

#define LOG_LIMIT (10 * 1024 * 1024)

static SERVICE_STATUS_HANDLE status_handle;
static SERVICE_STATUS status = {SERVICE_WIN32_OWN_PROCESS, SERVICE_START_PENDING, 0, NO_ERROR, 0, 0, 3000};
static HANDLE stop_event;
static HANDLE log_file = INVALID_HANDLE_VALUE;
static const wchar_t *agent, *log_path, *stop_file;
static DWORD stop_timeout_ms = 20000;
static wchar_t child_cmdline[32768];

static void report(DWORD state, DWORD wait_hint) {
  status.dwCurrentState = state;
  status.dwWaitHint = wait_hint;
  status.dwControlsAccepted = state == SERVICE_RUNNING ? SERVICE_ACCEPT_STOP | SERVICE_ACCEPT_SHUTDOWN : 0;
  status.dwCheckPoint = (state == SERVICE_RUNNING || state == SERVICE_STOPPED) ? 0 : status.dwCheckPoint + 1;
  SetServiceStatus(status_handle, &status);
}

/* One line in the log, UTF-8, with a UTC timestamp; FILE_APPEND_DATA keeps it whole beside the child's. */
static void note(const wchar_t *fmt, ...) {
  wchar_t line[2048];
  char utf8[6144];
  SYSTEMTIME t;
  GetSystemTime(&t);
  int n = swprintf(line, 2048, L"%04u-%02u-%02uT%02u:%02u:%02uZ service-host: ", t.wYear, t.wMonth, t.wDay,
                   t.wHour, t.wMinute, t.wSecond);
  va_list ap;
  va_start(ap, fmt);
  n += vswprintf(line + n, 2048 - n - 2, fmt, ap);
  va_end(ap);
  line[n++] = L'\r';
  line[n++] = L'\n';
  int len = WideCharToMultiByte(CP_UTF8, 0, line, n, utf8, sizeof utf8, NULL, NULL);
  DWORD written;
  if (log_file != INVALID_HANDLE_VALUE) WriteFile(log_file, utf8, len, &written, NULL);
}

static void open_log(void) {
  if (log_file != INVALID_HANDLE_VALUE) CloseHandle(log_file);
  WIN32_FILE_ATTRIBUTE_DATA a;
  if (GetFileAttributesExW(log_path, GetFileExInfoStandard, &a) &&
      (a.nFileSizeHigh || a.nFileSizeLow > LOG_LIMIT)) {
    wchar_t old[MAX_PATH + 4];
    swprintf(old, MAX_PATH + 4, L"%ls.1", log_path);
    MoveFileExW(log_path, old, MOVEFILE_REPLACE_EXISTING);
  }
  /* Inheritable: the child writes its stdout and stderr to the same file. */
  SECURITY_ATTRIBUTES sa = {sizeof sa, NULL, TRUE};
  log_file = CreateFileW(log_path, FILE_APPEND_DATA, FILE_SHARE_READ | FILE_SHARE_WRITE | FILE_SHARE_DELETE,
                         &sa, OPEN_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
}

/* Appends one argument the way CommandLineToArgvW and the C runtime read it back. */
static void append_arg(wchar_t *out, size_t cap, const wchar_t *arg) {
  size_t n = wcslen(out);
  if (n && n < cap - 1) out[n++] = L' ';
  int quote = !*arg || wcspbrk(arg, L" \t\"") != NULL;
  if (quote && n < cap - 1) out[n++] = L'"';
  for (const wchar_t *p = arg; *p && n < cap - 4; p++) {
    size_t slashes = 0;
    while (p[slashes] == L'\\') slashes++;
    if (slashes) {
      /* Backslashes double only before a quote, or before the closing quote we add. */
      size_t times = (quote && (p[slashes] == L'"' || !p[slashes])) ? 2 : 1;
      for (size_t i = 0; i < slashes * times && n < cap - 4; i++) out[n++] = L'\\';
      p += slashes - 1;
      continue;
    }
    if (*p == L'"') out[n++] = L'\\';
    out[n++] = *p;
  }
  if (quote) out[n++] = L'"';
  out[n] = 0;
}

static DWORD WINAPI on_control(DWORD control, DWORD type, void *data, void *ctx) {
  (void)type, (void)data, (void)ctx;
  if (control == SERVICE_CONTROL_STOP || control == SERVICE_CONTROL_SHUTDOWN) {
    report(SERVICE_STOP_PENDING, stop_timeout_ms + 5000);
    SetEvent(stop_event);
    return NO_ERROR;
  }
  return control == SERVICE_CONTROL_INTERROGATE ? NO_ERROR : ERROR_CALL_NOT_IMPLEMENTED;
}

static HANDLE start_child(HANDLE job) {
  open_log();
  STARTUPINFOW si;
  ZeroMemory(&si, sizeof si);
  si.cb = sizeof si;
  si.dwFlags = STARTF_USESTDHANDLES;
  si.hStdInput = NULL;
  si.hStdOutput = log_file;
  si.hStdError = log_file;
  PROCESS_INFORMATION pi;
  wchar_t cmd[32768];
  wcscpy(cmd, child_cmdline); /* CreateProcessW may write into its command line */
  if (!CreateProcessW(agent, cmd, NULL, NULL, TRUE, CREATE_NO_WINDOW | CREATE_SUSPENDED, NULL, NULL, &si,
                      &pi)) {
    note(L"could not start %ls (error %lu)", agent, GetLastError());
    return NULL;
  }
  AssignProcessToJobObject(job, pi.hProcess);
  ResumeThread(pi.hThread);
  CloseHandle(pi.hThread);
  note(L"agent started (pid %lu): %ls", pi.dwProcessId, child_cmdline);
  return pi.hProcess;
}

static void WINAPI service_main(DWORD argc, wchar_t **argv) {
  (void)argc;
  status_handle = RegisterServiceCtrlHandlerExW(argv[0], on_control, NULL);
  if (!status_handle) return;
  report(SERVICE_START_PENDING, 3000);
  stop_event = CreateEventW(NULL, TRUE, FALSE, NULL);
  /* Closing the host's last handle (its exit, even a crash) kills the agent with it. */
  HANDLE job = CreateJobObjectW(NULL, NULL);
  JOBOBJECT_EXTENDED_LIMIT_INFORMATION limit = {0};
  limit.BasicLimitInformation.LimitFlags = JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE;
  SetInformationJobObject(job, JobObjectExtendedLimitInformation, &limit, sizeof limit);
  SetEnvironmentVariableW(L"DEPOTSYNC_STOP_FILE", stop_file);
  DeleteFileW(stop_file);
  open_log();
  note(L"service %ls starting", argv[0]);
  report(SERVICE_RUNNING, 0);

  DWORD backoff_ms = 1000;
  for (;;) {
    DeleteFileW(stop_file);
    ULONGLONG started = GetTickCount64();
    HANDLE child = start_child(job);
    HANDLE waits[2] = {stop_event, child};
    DWORD w = child ? WaitForMultipleObjects(2, waits, FALSE, INFINITE) : WAIT_OBJECT_0 + 1;
    if (w == WAIT_OBJECT_0) {
      /* Stop: ask the agent to end through the stop file, then end it. */
      HANDLE f = CreateFileW(stop_file, GENERIC_WRITE, 0, NULL, CREATE_ALWAYS, FILE_ATTRIBUTE_NORMAL, NULL);
      if (f != INVALID_HANDLE_VALUE) CloseHandle(f);
      note(L"stopping: asked the agent to end (%ls)", stop_file);
      if (child && WaitForSingleObject(child, stop_timeout_ms) == WAIT_TIMEOUT) {
        note(L"the agent did not end within %lu ms: terminating it", stop_timeout_ms);
        TerminateProcess(child, 1);
        WaitForSingleObject(child, 5000);
      }
      DWORD code = 0;
      if (child) GetExitCodeProcess(child, &code), CloseHandle(child);
      note(L"service stopped (agent exit code %lu)", code);
      DeleteFileW(stop_file);
      break;
    }
    DWORD code = 0;
    if (child) GetExitCodeProcess(child, &code), CloseHandle(child);
    if (GetTickCount64() - started > 60000) backoff_ms = 1000;
    note(L"the agent exited with code %lu: starting it again in %lu ms", code, backoff_ms);
    if (WaitForSingleObject(stop_event, backoff_ms) == WAIT_OBJECT_0) {
      note(L"service stopped");
      break;
    }
    backoff_ms = backoff_ms >= 30000 ? 60000 : backoff_ms * 2;
  }
  CloseHandle(job);
  if (log_file != INVALID_HANDLE_VALUE) CloseHandle(log_file);
  report(SERVICE_STOPPED, 0);
}

static int usage(const wchar_t *why) {
  fwprintf(stderr,
           L"depotsync-agent-service: %ls\nusage: depotsync-agent-service.exe --agent EXE [--log FILE] "
           L"[--stop-file FILE] [--stop-timeout SECONDS] -- AGENT-ARGS...\n(run by the service manager: "
           L"depotsync-agent.exe service install registers it)\n",
           why);
  return 2;
}

int wmain(void) {
  int argc;
  wchar_t **argv = CommandLineToArgvW(GetCommandLineW(), &argc);
  static wchar_t default_log[MAX_PATH], default_stop[MAX_PATH];
  int i = 1;
  for (; i < argc; i++) {
    if (!wcscmp(argv[i], L"--")) break;
    if (i + 1 >= argc) return usage(L"an option without its value");
    if (!wcscmp(argv[i], L"--agent")) agent = argv[++i];
    else if (!wcscmp(argv[i], L"--log")) log_path = argv[++i];
    else if (!wcscmp(argv[i], L"--stop-file")) stop_file = argv[++i];
    else if (!wcscmp(argv[i], L"--stop-timeout")) stop_timeout_ms = 1000 * (DWORD)_wtoi(argv[++i]);
    else return usage(L"unknown option");
  }
  if (!agent) return usage(L"--agent is required");
  if (!stop_timeout_ms) stop_timeout_ms = 20000;
  wchar_t data[MAX_PATH];
  if (!GetEnvironmentVariableW(L"ProgramData", data, MAX_PATH)) wcscpy(data, L"C:\\ProgramData");
  if (!log_path) {
    swprintf(default_log, MAX_PATH, L"%ls\\depotsync", data);
    CreateDirectoryW(default_log, NULL);
    wcscat(default_log, L"\\agent-service.log");
    log_path = default_log;
  }
  if (!stop_file) {
    swprintf(default_stop, MAX_PATH, L"%ls\\depotsync\\agent-service.stop", data);
    stop_file = default_stop;
  }
  child_cmdline[0] = 0;
  append_arg(child_cmdline, 32768, agent);
  for (i++; i < argc; i++) append_arg(child_cmdline, 32768, argv[i]);

  SERVICE_TABLE_ENTRYW table[] = {{L"", service_main}, {NULL, NULL}};
  if (!StartServiceCtrlDispatcherW(table)) {
    DWORD e = GetLastError();
    if (e == ERROR_FAILED_SERVICE_CONTROLLER_CONNECT)
      return usage(L"this program is run by the service manager");
    fwprintf(stderr, L"depotsync-agent-service: StartServiceCtrlDispatcher failed (error %lu)\n", e);
    return 1;
  }
  return 0;
}
