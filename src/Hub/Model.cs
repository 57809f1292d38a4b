using System.Text.Json.Nodes;
using Hub.IR;
using Hub.Models;
using Hub.Runtime;
using Hub.Tokenization;

namespace Hub;

/// <summary>
/// A loaded model: its IR (memory-mapped), the compiled runtime plan, config and tokenizer.
/// <see cref="FromPretrained"/> is the auto entry point returning the class that matches the model's task.
/// </summary>
public abstract class Model : IDisposable
{
    private readonly Lazy<HubTokenizer?> _tokenizer;
    private bool _disposed;

    /// <summary>Task name (from the graph metadata) → constructor of the public class serving it.</summary>
    internal static readonly Dictionary<string, Func<LoadedModel, Model>> Factories = new(StringComparer.Ordinal)
    {
        ["causal_lm"] = m => new CausalLM(m),
        ["sequence_classification"] = m => new SequenceClassifier(m),
        ["text_encoder"] = m => new TextEncoder(m),
    };

    private protected Model(LoadedModel loaded)
    {
        Loaded = loaded;
        _tokenizer = new Lazy<HubTokenizer?>(() => TokenizerFiles.Present(loaded.Directory) ? AutoTokenizer.FromPretrained(loaded.Directory) : null);
    }

    internal LoadedModel Loaded { get; }

    /// <summary>The IR folder the model was loaded from.</summary>
    public string Directory => Loaded.Directory;

    /// <summary>The Hugging Face config (config.json).</summary>
    public JsonObject Config => Loaded.Config;

    /// <summary>HF <c>model_type</c> of the model.</summary>
    public string ModelType => Loaded.Ir.Graph.ModelType;

    /// <summary>The IR graph (inputs, outputs, states, nodes, weights index).</summary>
    public Graph Graph => Loaded.Ir.Graph;

    /// <summary>The model's tokenizer, or null when its folder has no tokenizer files.</summary>
    public HubTokenizer? Tokenizer => _tokenizer.Value;

    /// <summary>Whether <see cref="Tokenizer"/> has been loaded (tests check that token-id callers never load it).</summary>
    internal bool TokenizerLoaded => _tokenizer.IsValueCreated;

    /// <summary>The tokenizer; throws a clear error when the model has none.</summary>
    protected HubTokenizer RequireTokenizer() => Tokenizer ??
        throw new ModelFileNotFoundException(Path.Combine(Directory, "tokenizer.json"), "this model has no tokenizer files; pass token ids instead of text, or add the tokenizer files to the model folder");

    /// <summary>
    /// Loads any supported model: a local IR folder, a local Hugging Face (or original-layout) checkpoint, or a hub repo id.
    /// With <paramref name="export"/> a checkpoint is converted into IR once and cached (keyed by content and options);
    /// without it, the path must already be an IR folder.
    /// </summary>
    /// <param name="idOrPath">Local folder/file or hub repo id (<c>org/name</c>).</param>
    /// <param name="export">Convert a checkpoint into IR (cached) instead of expecting an IR folder.</param>
    /// <param name="options">Fetch, export and runtime options.</param>
    public static Model FromPretrained(string idOrPath, bool export = false, ModelOptions? options = null)
    {
        var loaded = LoadedModel.Load(idOrPath, export, options ?? ModelOptions.Default);
        var task = (string?)loaded.Ir.Graph.Metadata["task"] ?? "causal_lm";
        if (!Factories.TryGetValue(task, out var factory))
        {
            loaded.Dispose();
            throw new UnsupportedModelException($"{loaded.Directory}: task '{task}' has no model class in this Hub");
        }
        return factory(loaded);
    }

    /// <summary>
    /// Writes the model (IR, config, generation config and tokenizer files) to <paramref name="dir"/>, a folder that
    /// <c>FromPretrained(dir)</c> loads without conversion. Written to a temporary folder and moved into place.
    /// </summary>
    public void Save(string dir)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        dir = Path.GetFullPath(dir);
        if (string.Equals(dir, Path.GetFullPath(Directory), StringComparison.Ordinal)) return;
        if (System.IO.Directory.Exists(dir) && System.IO.Directory.EnumerateFileSystemEntries(dir).Any() && !IrModel.Exists(dir))
            throw new HubException($"{dir} exists and is not an exported model; choose an empty or new folder");
        var parent = Path.GetDirectoryName(dir)!;
        System.IO.Directory.CreateDirectory(parent);
        var tmp = Path.Combine(parent, $".{Path.GetFileName(dir)}.tmp-{Guid.NewGuid():N}");
        try
        {
            CopyTree(Directory, tmp);
            if (System.IO.Directory.Exists(dir)) System.IO.Directory.Delete(dir, true);
            System.IO.Directory.Move(tmp, dir);
        }
        finally
        {
            if (System.IO.Directory.Exists(tmp)) System.IO.Directory.Delete(tmp, true);
        }
    }

    private static void CopyTree(string src, string dst, bool top = true)
    {
        System.IO.Directory.CreateDirectory(dst);
        foreach (var f in System.IO.Directory.EnumerateFiles(src))
            if (!Path.GetFileName(f).StartsWith('.')) File.Copy(f, Path.Combine(dst, Path.GetFileName(f)));
        foreach (var d in System.IO.Directory.EnumerateDirectories(src))
            // not the runtime's weight cache (derived, as large as the weights; the copy writes its own on first load)
            if (!(top && IrModel.Exists(src) && Path.GetFileName(d) == IrFormat.CacheFolder))
                CopyTree(d, Path.Combine(dst, Path.GetFileName(d)), top: false);
    }

    /// <summary>Releases the runtime buffers and the weight mapping.</summary>
    public void Dispose()
    {
        if (_disposed) return;
        _disposed = true;
        Dispose(true);
        Loaded.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>Releases what a derived class holds.</summary>
    protected virtual void Dispose(bool disposing) { }
}

/// <summary>What every model class is built from: IR, compiled plan, config, options.</summary>
internal sealed class LoadedModel : IDisposable
{
    public required string Directory { get; init; }
    public required IrModel Ir { get; init; }
    public required JsonObject Config { get; init; }
    public required ModelOptions Options { get; init; }
    public required CompiledModel Compiled { get; set; }

    /// <summary>Largest sequence length the runtime was compiled for.</summary>
    public int MaxContext => Compiled.Options.MaxContext;

    public static LoadedModel Load(string idOrPath, bool export, ModelOptions options)
    {
        var local = ModelLocator.Resolve(idOrPath, options);
        string irDir;
        if (System.IO.Directory.Exists(local) && IrModel.Exists(local)) irDir = local;
        else if (export) irDir = Exporter.GetOrCreateCached(local, options);
        else
            throw new HubException($"{local} is a checkpoint, not an exported Hub model; pass export: true to convert it (cached), or run `hub convert {local} <out>`");

        var ir = IrModel.Load(irDir);
        try
        {
            var config = ConfigReader.Load(Path.Combine(irDir, "config.json"));
            var compiled = CompiledModel.Compile(ir, RuntimeOptionsFor(ir.Graph, options, options.MaxBatch));
            return new LoadedModel { Directory = irDir, Ir = ir, Config = config, Options = options, Compiled = compiled };
        }
        catch
        {
            ir.Dispose();
            throw;
        }
    }

    internal static RuntimeOptions RuntimeOptionsFor(Graph graph, ModelOptions options, int maxBatch)
    {
        int modelMax = (int?)graph.Metadata["max_position_embeddings"] ?? 2048;
        int ctx = options.MaxContext > 0 ? Math.Min(options.MaxContext, modelMax) : Math.Min(modelMax, 4096);
        return new RuntimeOptions { Threads = options.Threads, MaxContext = ctx, MaxBatch = Math.Max(1, maxBatch), KvCachePrecision = options.KvCachePrecision };
    }

    public void Dispose()
    {
        Compiled.Dispose();
        Ir.Dispose();
    }
}

/// <summary>Which files make a tokenizer.</summary>
internal static class TokenizerFiles
{
    private static readonly string[] Names = ["tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model"];

    public static bool Present(string dir) =>
        Names.Any(n => File.Exists(Path.Combine(dir, n))) || System.IO.Directory.EnumerateFiles(dir, "tok*.bin").Any();
}
