using System.Runtime.CompilerServices;
using Hub.IR;
using Hub.Runtime.Threading;

namespace Hub.Runtime.Execution;

/// <summary>
/// One node bound to one request: parses its attributes once, re-infers output shapes every Infer (no allocation),
/// then runs its kernel. Parallel ops are their own <see cref="ParallelWork"/>, so dispatch allocates nothing.
/// </summary>
/// <remarks>
/// Every method a decode step runs (here, in the ops, InferRequest, WorkerPool, TensorRt) is AggressiveOptimization,
/// as the kernels are: a tiny model's whole benchmark (stories260K: 384 decode steps, ~25 ms) ends before tiered
/// compilation promotes them from tier 0 (it waits for 100 ms without new tier-0 code), and tier-0 shape passes and
/// small ops took a fifth of its step (0.070 → 0.055 ms; DOTNET_TieredCompilation=0 gives 0.051).
/// </remarks>
internal abstract unsafe class OpExec : ParallelWork
{
    public readonly Node Node;
    protected readonly InferRequest R;
    protected readonly int[] In;
    protected readonly int[] Out;

    protected OpExec(Node node, InferRequest r, int minInputs, int maxInputs, int outputs)
    {
        Node = node; R = r;
        if (node.Inputs.Count < minInputs || node.Inputs.Count > maxInputs)
            throw BadGraph($"{node.Inputs.Count} inputs; expected {(minInputs == maxInputs ? minInputs.ToString() : $"{minInputs}..{maxInputs}")}");
        if (outputs >= 0 && node.Outputs.Count != outputs)
            throw BadGraph($"{node.Outputs.Count} outputs; expected {outputs}");
        In = new int[node.Inputs.Count];
        for (int i = 0; i < In.Length; i++) In[i] = node.Inputs[i].Length == 0 ? -1 : r.Model.ValueId(node.Inputs[i]);
        Out = new int[node.Outputs.Count];
        for (int i = 0; i < Out.Length; i++) Out[i] = r.Model.ValueId(node.Outputs[i]);
        for (int i = 0; i < minInputs; i++)
            if (In[i] < 0) throw BadGraph($"input {i} is required");
    }

    protected TensorRt X(int i) => R.T[In[i]];
    protected bool HasInput(int i) => i < In.Length && In[i] >= 0;
    protected TensorRt Y(int i = 0) => R.T[Out[i]];

    /// <summary>Floats of per-worker scratch this op needs.</summary>
    public virtual long ScratchFloats => 0;

    /// <summary>Sets the output shapes and dtypes from the inputs; throws <see cref="ModelInputException"/> on mismatch.</summary>
    public abstract void InferShapes();

    /// <summary>Computes the outputs (buffers are assigned).</summary>
    public abstract void Run();

    public override void Execute(int index, int worker) => throw new InvalidOperationException($"{Node.Op} is not a parallel op");

    protected ModelInputException Bad(string message) => new($"node '{Node.Name}' ({Node.Op}): {message}");

    /// <summary>The IR itself is malformed at this node: the error names the graph file, the node and what to re-export.</summary>
    protected IrFormatException BadGraph(string message) =>
        new(R.Model.GraphFile, $"node '{Node.Name}' ({Node.Op}): {message}; the IR is malformed, re-export the model");

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected void RequireF32(int input)
    {
        var t = X(input);
        if (t.DType != DType.F32) throw Bad($"input '{Node.Inputs[input]}' is {t.DType}; expected F32");
    }

    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected void RequireI32(int input)
    {
        var t = X(input);
        if (t.DType != DType.I32) throw Bad($"input '{Node.Inputs[input]}' is {t.DType}; expected I32");
    }

    protected void RequireWeightF32(int input)
    {
        if (In[input] >= 0 && R.Model.IsWeight(In[input]) && R.T[In[input]].DType != DType.F32)
            throw BadGraph($"weight '{Node.Inputs[input]}' is {R.T[In[input]].DType}; vectors must be F32");
    }

    /// <summary>Shape rule shared by every Linear executor (float and quantized weights): [..., K] → [..., N].</summary>
    [MethodImpl(MethodImplOptions.AggressiveOptimization)]
    protected void InferLinearShapes(int n, int k)
    {
        RequireF32(0);
        var x = X(0);
        if (x.Rank < 1 || x.Dim(-1) != k) throw Bad($"input {x.ShapeString()} does not end in K = {k} of weight '{Node.Inputs[1]}' [{n}, {k}]");
        Y().ShapeFrom(x, n);
        Y().DType = DType.F32;
    }

    protected static int Axis(long axis, int rank) => (int)(axis < 0 ? axis + rank : axis);

    /// <summary>Product of dims [from, to).</summary>
    protected static long Prod(TensorRt t, int from, int to)
    {
        long p = 1;
        for (int i = from; i < to; i++) p *= t.Dims[i];
        return p;
    }
}
