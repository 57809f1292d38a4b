using Microsoft.Extensions.Logging;

namespace Hub.Client;

/// <summary>
/// Cross-process lock on one blob: <c>.locks/{repo_folder}/{etag}.lock</c> opened with <see cref="FileShare.None"/>
/// (an flock on Unix, like Python's filelock), so two downloaders of one file produce one blob.
/// </summary>
internal sealed class BlobLock : IDisposable
{
    private readonly FileStream _stream;

    private BlobLock(FileStream s) => _stream = s;

    public static async Task<BlobLock> AcquireAsync(string path, ILogger logger, CancellationToken ct)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        var start = DateTime.UtcNow;
        var lastLog = start;
        var delay = 10;
        while (true)
        {
            ct.ThrowIfCancellationRequested();
            try
            {
                var fs = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None, 1, FileOptions.None);
                return new BlobLock(fs);
            }
            catch (IOException)
            {
                // Held by another downloader (this process or another one): wait for it.
            }
            if (DateTime.UtcNow - lastLog > TimeSpan.FromSeconds(10))
            {
                lastLog = DateTime.UtcNow;
                logger.LogInformation("Still waiting for lock {LockPath} (another download of this file is running)", path);
            }
            await Task.Delay(delay, ct).ConfigureAwait(false);
            delay = Math.Min(delay * 2, 200);
        }
    }

    public void Dispose() => _stream.Dispose();
}
