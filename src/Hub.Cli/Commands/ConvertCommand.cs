using System.CommandLine;

namespace Hub.Cli.Commands;

/// <summary>
/// <c>hub convert &lt;input&gt; -o &lt;out&gt; [--weight-format f32|f16|bf16|int8|int4] [--group-size N] [--sym|--asym]
/// [--ignored-scope REGEX ...] [--all-layers]</c>: any supported checkpoint layout → Hub IR folder.
/// </summary>
public static class ConvertCommand
{
    /// <summary>Builds the command.</summary>
    public static Command Create()
    {
        var input = new Argument<string>("input") { Description = "checkpoint folder or file (HF, Meta consolidated, llama2.c .bin, FlagAI), or hub repo id" };
        var output = new Argument<string?>("out") { Description = "output IR folder (or -o)", Arity = ArgumentArity.ZeroOrOne };
        var outOpt = new Option<string?>("--output", "-o") { Description = "output IR folder" };
        var from = new Option<string?>("--from") { Description = "source layout: hf, meta, llama2c, aquila (default: detect)" };
        var sub = new Option<string?>("--subfolder") { Description = "folder inside the repo" };
        var weights = new CliRunner.WeightArgs();
        var cmd = new Command("convert", "Convert a checkpoint into a Hub IR folder (streams one tensor at a time), optionally compressing weights to int8/int4.") { input, output, outOpt, from, sub };
        weights.AddTo(cmd);
        var gguf = GgufConvert.AddTo(cmd);
        cmd.SetAction(r => CliRunner.Run(() =>
        {
            var outDir = (r.GetValue(output), r.GetValue(outOpt)) switch
            {
                (null, null) => throw new ArgumentException("give the output folder with -o DIR"),
                ({ } a, { } b) when a != b => throw new ArgumentException($"two output folders given ('{a}' and -o '{b}'); give one"),
                (var a, var b) => (a ?? b)!,
            };
            var options = weights.Apply(r, new ModelOptions { SourceFormat = r.GetValue(from), Subfolder = r.GetValue(sub), Progress = new CliRunner.StderrProgress() });
            if (gguf.Requested(r, outDir)) return gguf.Run(r, r.GetValue(input)!, outDir, options);
            var src = ModelLocator.Resolve(r.GetValue(input)!, options);
            var sw = System.Diagnostics.Stopwatch.StartNew();
            var (arch, graph) = Exporter.Export(src, outDir, options);
            long bytes = graph.Weights.Sum(w => w.Length);
            Console.WriteLine($"converted {arch}: {graph.Nodes.Count} nodes, {graph.Weights.Count} weights ({bytes / 1048576.0:F1} MiB) → {Path.GetFullPath(outDir)} in {sw.Elapsed.TotalSeconds:F1} s");
            return 0;
        }));
        return cmd;
    }
}
