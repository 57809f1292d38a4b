using Hub.Benchmarks.Peers;
using Hub.Converters.Formats;
using Hub.Tests;
using LLama.Exceptions;

namespace Hub.Peers.Tests;

/// <summary>Loading a GGUF into the llama.cpp peer fails with typed Hub errors that name the file and the fix.</summary>
public sealed class LlamaCppPeerErrorTests : IDisposable
{
    private readonly string _tmp = SharedDir.TempDir("hub-peer-errors");

    public void Dispose() { try { Directory.Delete(_tmp, true); } catch (IOException) { } }

    [Fact]
    public void Missing_file_throws_ModelFileNotFoundException_naming_it()
    {
        var path = Path.Combine(_tmp, "absent.gguf");
        var e = Assert.Throws<ModelFileNotFoundException>(() => LlamaCppPeer.Load(path, 1, 16));
        Assert.Equal(path, e.FilePath);
        Assert.Contains("hub convert", e.Message);
    }

    [Fact]
    public void Gguf_without_a_model_throws_CheckpointFormatException_naming_the_file_and_fix()
    {
        // A well-formed GGUF that is no model: llama.cpp finds no general.architecture and refuses it.
        var w = new GgufWriter();
        w.Add("general.name", "not a model");
        var path = Path.Combine(_tmp, "empty.gguf");
        w.Write(path);
        var e = Assert.Throws<CheckpointFormatException>(() => LlamaCppPeer.Load(path, 1, 16));
        Assert.Equal(path, e.FilePath);
        Assert.Contains(path, e.Message);
        Assert.Contains("re-export", e.Message);
    }

    [Fact]
    public void File_that_is_not_gguf_throws_CheckpointFormatException()
    {
        var path = Path.Combine(_tmp, "junk.gguf");
        File.WriteAllText(path, "this is not a GGUF file at all, just some text long enough to read a header from");
        var e = Assert.Throws<CheckpointFormatException>(() => LlamaCppPeer.Load(path, 1, 16));
        Assert.Equal(path, e.FilePath);
    }

    [Fact]
    public void Native_library_failures_become_LlamaCppUnavailableException_naming_the_file_and_the_package()
    {
        // The native library loads once per process, so its failure is checked through the translation itself.
        var path = Path.Combine(_tmp, "m.gguf");
        foreach (var raw in new Exception[]
                 {
                     new DllNotFoundException("libllama.so: cannot open shared object file"),
                     new TypeInitializationException("LLama.Native.NativeApi", new RuntimeError("The native library cannot be correctly loaded")),
                 })
        {
            var e = Assert.IsType<LlamaCppUnavailableException>(LlamaCppPeer.Translate(raw, path));
            Assert.Equal(path, e.FilePath);
            Assert.StartsWith(path, e.Message);
            Assert.Contains("LLamaSharp.Backend.Cpu", e.Message);
            Assert.Same(raw, e.InnerException);
        }
        Assert.Null(LlamaCppPeer.Translate(new NullReferenceException(), path));
    }
}
