using System.CommandLine;

namespace Hub.Cli.Commands;

/// <summary>Shared plumbing: user errors become one line on stderr and exit code 1.</summary>
internal static class CliRunner
{
    public static int Run(Func<int> body)
    {
        try { return body(); }
        catch (HubException e) { Console.Error.WriteLine($"error: {OneLine(e.Message)}"); return 1; }
        catch (ArgumentException e) { Console.Error.WriteLine($"error: {OneLine(e.Message)}"); return 1; }
        catch (IOException e) { Console.Error.WriteLine($"error: {OneLine(e.Message)}"); return 1; }
        catch (UnauthorizedAccessException e) { Console.Error.WriteLine($"error: {OneLine(e.Message)}"); return 1; }
        catch (OperationCanceledException) { Console.Error.WriteLine("cancelled"); return 130; }
    }

    public static string OneLine(string s) => s.ReplaceLineEndings(" ");

    /// <summary>
    /// Progress lines written to stderr at once (<see cref="Progress{T}"/> posts to the thread pool, so its last lines,
    /// such as the export's compression summary, could appear after the result or be lost at exit).
    /// </summary>
    public sealed class StderrProgress : IProgress<string>
    {
        public void Report(string value) => Console.Error.WriteLine(value);
    }

    /// <summary>
    /// Model options shared by the run commands. <paramref name="kvCache"/> false leaves out <c>--kv-cache</c>: encoders
    /// (classify, embed) keep no cache, so the flag would be accepted and do nothing.
    /// </summary>
    public sealed class ModelArgs(bool kvCache = true)
    {
        public Argument<string> Model { get; } = new("model") { Description = "IR folder, Hugging Face checkpoint folder, original checkpoint (meta, llama2.c, FlagAI) or hub repo id" };
        public Option<string?> Subfolder { get; } = new("--subfolder") { Description = "folder inside the repo (e.g. stories260K for karpathy/tinyllamas)" };
        public Option<string?> Revision { get; } = new("--revision") { Description = "hub branch, tag or commit" };
        public Option<string?> From { get; } = new("--from") { Description = "checkpoint layout: hf, meta, llama2c, aquila (default: detect)" };
        public Option<int> Threads { get; } = new("--threads") { Description = "compute threads (default: all cores)" };
        public Option<int> MaxContext { get; } = new("--max-context") { Description = "KV cache capacity in positions" };
        public Option<string?> KvCache { get; } = new("--kv-cache") { Description = $"KV cache precision: {Hub.Runtime.KvCachePrecisionNames.Allowed} (auto: f16 for compressed weights, f32 for f32 weights)" };
        public WeightArgs Weights { get; } = new();

        public void AddTo(Command c)
        {
            c.Arguments.Add(Model);
            c.Options.Add(Subfolder); c.Options.Add(Revision); c.Options.Add(From); c.Options.Add(Threads); c.Options.Add(MaxContext);
            if (kvCache) c.Options.Add(KvCache);
            Weights.AddTo(c);
        }

        public ModelOptions Options(ParseResult r, bool quiet = false) => Weights.Apply(r, new ModelOptions
        {
            Subfolder = r.GetValue(Subfolder),
            Revision = r.GetValue(Revision),
            SourceFormat = r.GetValue(From),
            Threads = r.GetValue(Threads),
            MaxContext = r.GetValue(MaxContext),
            KvCachePrecision = kvCache ? Hub.Runtime.KvCachePrecisionNames.Parse(r.GetValue(KvCache) ?? "auto", "--kv-cache") : Hub.Runtime.KvCachePrecision.Auto,
            Progress = quiet ? null : new StderrProgress(),
        });
    }

    /// <summary>Export precision flags shared by <c>convert</c> and the run commands (which export on the fly).</summary>
    public sealed class WeightArgs
    {
        public const string Allowed = "auto, f32, f16, bf16, int8, int4";
        public Option<string?> Format { get; } = new("--weight-format", "--dtype") { Description = $"weight precision of the export: {Allowed}" };
        public Option<int?> GroupSize { get; } = new("--group-size") { Description = "int8/int4: values per scale (0 or -1 = per output channel; int4 default 128, int8 default per channel)" };
        public Option<bool> Sym { get; } = new("--sym") { Description = "int8/int4: symmetric weights (maps to GGUF Q8_0/Q4_0 at group 32)" };
        public Option<bool> Asym { get; } = new("--asym") { Description = "int8/int4: asymmetric weights with zero points (the default)" };
        public Option<string[]> IgnoredScope { get; } = new("--ignored-scope") { Description = "int8/int4: regex on IR weight names kept in float (repeatable)" };
        public Option<bool> AllLayers { get; } = new("--all-layers") { Description = "int4: compress embeddings and the output projection to int4 too (default int8)" };

        public void AddTo(Command c)
        {
            c.Options.Add(Format); c.Options.Add(GroupSize); c.Options.Add(Sym); c.Options.Add(Asym); c.Options.Add(IgnoredScope); c.Options.Add(AllLayers);
        }

        /// <summary>Parses a <c>--weight-format</c> value; unknown values name the flag and the allowed values.</summary>
        public static WeightFormat Parse(string? value) => (value ?? "auto").ToLowerInvariant() switch
        {
            "auto" => WeightFormat.Auto,
            "f32" or "fp32" or "float32" => WeightFormat.F32,
            "f16" or "fp16" or "float16" => WeightFormat.F16,
            "bf16" or "bfloat16" => WeightFormat.BF16,
            "int8" or "i8" => WeightFormat.Int8,
            "int4" or "i4" => WeightFormat.Int4,
            _ => throw new ArgumentException($"--weight-format '{value}' is not one of {Allowed}"),
        };

        /// <summary>Copies the flags into <paramref name="o"/>, rejecting combinations that make no sense.</summary>
        public ModelOptions Apply(ParseResult r, ModelOptions o)
        {
            var format = Parse(r.GetValue(Format));
            bool sym = r.GetValue(Sym), asym = r.GetValue(Asym);
            if (sym && asym) throw new ArgumentException("give at most one of --sym and --asym");
            int? group = r.GetValue(GroupSize);
            if (group is < -1) throw new ArgumentException($"--group-size {group} must be a positive number of values, or 0/-1 for per output channel");
            var ignored = r.GetValue(IgnoredScope) ?? Array.Empty<string>();
            bool all = r.GetValue(AllLayers);
            bool quant = format is WeightFormat.Int8 or WeightFormat.Int4;
            if (!quant && (group is not null || sym || asym || ignored.Length > 0 || all))
                throw new ArgumentException("--group-size, --sym, --asym, --ignored-scope and --all-layers need --weight-format int8 or int4");
            if (all && format != WeightFormat.Int4) throw new ArgumentException("--all-layers needs --weight-format int4");
            if (format == WeightFormat.Int4 && group is > 0 && group % 32 != 0)
                throw new ArgumentException($"--group-size {group} must be a multiple of 32 for int4 (32, 64, 128, ...)");
            return With(o, format, quant && group is not null ? Math.Max(0, group.Value) : null, quant && (sym || asym) ? sym : null, ignored, all);
        }

        /// <summary><paramref name="o"/> with its export precision settings replaced (everything else kept).</summary>
        public static ModelOptions With(ModelOptions o, WeightFormat format, int? groupSize = null, bool? symmetric = null,
            IReadOnlyList<string>? ignoredScope = null, bool allLayers = false) => new()
        {
            Revision = o.Revision, Subfolder = o.Subfolder, SourceFormat = o.SourceFormat, Threads = o.Threads, MaxContext = o.MaxContext,
            MaxBatch = o.MaxBatch, KvCachePrecision = o.KvCachePrecision, ExportCacheDir = o.ExportCacheDir, Endpoint = o.Endpoint, HubCacheDir = o.HubCacheDir, Token = o.Token,
            Offline = o.Offline, Progress = o.Progress,
            WeightFormat = format, GroupSize = groupSize, Symmetric = symmetric, IgnoredScope = ignoredScope ?? Array.Empty<string>(), AllLayers = allLayers,
        };
    }

    public static int[] ParseIds(string text)
    {
        try
        {
            return text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
                .Select(s => int.Parse(s, System.Globalization.CultureInfo.InvariantCulture)).ToArray();
        }
        catch (FormatException) { throw new ArgumentException($"--ids/--prompt-ids must be comma-separated integers, got '{text}'"); }
        catch (OverflowException) { throw new ArgumentException($"--ids/--prompt-ids has a value outside the int range: '{text}'"); }
    }
}
