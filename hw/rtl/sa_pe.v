// sa_pe — one shift-add datapath of the SigmaQuant accelerator (docs/hardware.md).
//
// A DPW-bit product register P holds L packed sub-words ("Soft-SIMD" lanes) of run-time width
//   s = abits + wbits + GUARD        (the cost model's subword "product": a lane holds x·w whole)
//   L = floor(DPW / s)
// Lane j holds the product of one weight w with the activation x_j of output position p0 + j.
// A weight is applied by sequential shift-add, one digit per clock:
//   bit-serial  one cycle per bit of the b-bit two's complement weight (the sign bit subtracts;
//               a 1-bit weight is ±1, one cycle)
//   csd         one cycle per non-zero digit of the weight's canonical signed digit (non-adjacent)
//               form, recoded on the fly LSB first; zero weights are absent from the weight list
//               (zero-skipping)
// every cycle P <- (first digit ? 0 : P) ± (A << i), A = the lanes' activations packed at width s.
// At a weight's last digit the lanes are extracted (sign-borrow corrected) and added to L int32
// accumulators, in the same cycle; after the group's last weight they are written out. A lane
// group (channel c, positions p0 .. p0+L−1) thus costs exactly the sum of its weights' digits,
// or one cycle when it has no weight at all (an all-zero channel under csd).
//
// Memories are outside (sa_core's ports): per datapath a descriptor list (one entry per output
// channel it owns: channel, weight bits, accumulator start value, weight-list base and length), a
// weight list (k index + value) and a read port on the activation buffer (row k of the im2col
// matrix, LMAX positions from p0). Reads are combinational from the state registers.
module sa_pe #(
    parameter integer DPW = 32,     // datapath_bits
    parameter integer GUARD = 0,    // guard_bits
    parameter integer WMAX = 8,     // widest supported weight
    parameter integer WMIN = 1,     // narrowest supported weight (sets the lane count)
    parameter integer AMAX = 8,     // widest supported activation
    parameter integer AMIN = 2,     // narrowest supported activation
    parameter integer CSD_EN = 1,   // 1: the csd digit recoder is built (mode_csd selects it)
    parameter integer KW = 12,      // bits of a weight's k index (in_c/groups x k x k)
    parameter integer PW = 12,      // bits of an output position
    parameter integer CW = 8,       // bits of an output channel
    parameter integer DW = 6,       // bits of a descriptor index
    parameter integer EW = 13,      // bits of a weight-list address
    parameter integer LMAX = DPW / (AMIN + WMIN + GUARD)
) (
    input wire clk,
    input wire rst,
    input wire start,
    input wire mode_csd,
    input wire [3:0] abits,
    input wire [PW:0] npos,
    input wire [DW:0] ndesc,
    // descriptor list
    output wire [DW-1:0] desc_addr,
    input wire [CW+4+EW+EW:0] desc_data,  // {ch, wbits, ebase, ecount}
    input wire [31:0] desc_init,          // accumulator start value (bias - zp_x * sum w)
    // weight list
    output wire [EW-1:0] ent_addr,
    input wire [KW+WMAX-1:0] ent_data,    // {k, w (two's complement, WMAX bits)}
    // activation buffer: LMAX activations of row k from position p0 (0 beyond the row)
    output wire [KW-1:0] act_k,
    output wire [PW-1:0] act_p0,
    input wire [LMAX*AMAX-1:0] act_data,
    // accumulator write port
    output wire out_we,
    output wire [CW-1:0] out_ch,
    output wire [PW-1:0] out_p0,
    output wire [PW:0] out_count,
    output wire [LMAX*32-1:0] out_data,
    output wire busy,
    output wire done
`ifdef SQ_ACTIVITY
    , output reg [63:0] activity
`endif
);
  localparam integer SW = AMAX + WMAX + GUARD;  // widest lane
  localparam integer RW = WMAX + 2;             // csd remainder (may reach 2^(WMAX-1))
  localparam [1:0] IDLE = 2'd0, RUN = 2'd1, DONE = 2'd2;

  reg [1:0] st;
  reg [DW-1:0] d;
  reg [PW-1:0] p0;
  reg [EW:0] e;
  reg wstart;
  reg [3:0] bi;
  reg signed [RW-1:0] r;
  reg [DPW-1:0] P;
  reg [LMAX*32-1:0] acc;

  assign busy = st == RUN;
  assign done = st == DONE;

  // ---- descriptor and weight entry ----
  wire [CW-1:0] ch = desc_data[CW+4+EW+EW:4+EW+EW+1];
  wire [3:0] wbits = desc_data[4+EW+EW:EW+EW+1];
  wire [EW-1:0] ebase = desc_data[EW+EW:EW+1];
  wire [EW:0] ecount = desc_data[EW:0];
  assign desc_addr = d;
  assign ent_addr = ebase + e[EW-1:0];
  wire [KW-1:0] k = ent_data[KW+WMAX-1:WMAX];
  wire signed [WMAX-1:0] w = ent_data[WMAX-1:0];
  assign act_k = k;
  assign act_p0 = p0;
  wire empty = ecount == 0;

  // ---- sub-word width and lane count (a small table over the supported widths) ----
  wire [5:0] s = {2'b0, abits} + {2'b0, wbits} + GUARD[5:0];
  reg [PW:0] lanes;
  integer si;
  always @* begin
    lanes = 1;
    for (si = AMIN + WMIN + GUARD; si <= SW; si = si + 1)
      if (s == si) lanes = DPW / si;
  end

  // ---- the digit of this cycle ----
  reg dnz, dneg, dlast;
  reg [3:0] dpos;
  reg signed [RW-1:0] v, rnext;
  integer ti;
  always @* begin
    dnz = 1'b0;
    dneg = 1'b0;
    dlast = 1'b1;
    dpos = 4'd0;
    ti = 0;
    v = wstart ? {{(RW - WMAX) {w[WMAX-1]}}, w} : r;
    rnext = v;
    if (CSD_EN != 0 && mode_csd) begin
      // Non-adjacent form, least significant digit first: the lowest set bit i of v is a digit;
      // it is -1 when bit i+1 is also set (v ≡ 3 mod 4 after the shift), else +1.
      for (ti = RW - 2; ti >= 0; ti = ti - 1)
        if (v[ti]) dpos = ti[3:0];
      dnz = v != 0;
      dneg = v[dpos+1];
      rnext = dneg ? v + ({{(RW - 1) {1'b0}}, 1'b1} <<< dpos) : v - ({{(RW - 1) {1'b0}}, 1'b1} <<< dpos);
      dlast = rnext == 0;
    end else begin
      // Bit-serial: bit bi of the two's complement weight; the sign bit has weight -2^(b-1).
      dpos = bi;
      if (wbits == 4'd1) begin
        dnz = 1'b1;
        dneg = w[WMAX-1];
        dlast = 1'b1;
      end else begin
        dnz = w[bi];
        dneg = bi == wbits - 4'd1;
        dlast = bi == wbits - 4'd1;
      end
    end
  end

  // ---- packed activations, the shift-add step ----
  reg [DPW-1:0] A;
  integer pj;
  always @* begin
    A = {DPW{1'b0}};
    for (pj = 0; pj < LMAX; pj = pj + 1)
      if (pj < lanes)
        A = A | ({{(DPW - AMAX) {1'b0}}, act_data[pj*AMAX+:AMAX]} << (pj * s));
  end
  wire [DPW-1:0] shifted = A << dpos;
  wire [DPW-1:0] term = !dnz ? {DPW{1'b0}} : dneg ? ~shifted + 1'b1 : shifted;
  wire [DPW-1:0] Pn = (wstart ? {DPW{1'b0}} : P) + term;

  // ---- lane extraction (a negative lane borrows one from the lane above) and accumulation ----
  reg [LMAX*32-1:0] accn;
  reg [SW-1:0] fld;
  reg [31:0] lane, base;
  reg borrow;
  integer xj;
  always @* begin
    accn = acc;
    borrow = 1'b0;
    for (xj = 0; xj < LMAX; xj = xj + 1) begin
      fld = (Pn >> (xj * s)) & ~({SW{1'b1}} << s);
      lane = {{(32 - SW) {1'b0}}, fld} + {31'b0, borrow};
      lane = lane & ~(32'hFFFFFFFF << s);
      if (lane[s-1]) lane = lane - (32'd1 << s);  // sign-extend from s bits
      // Lanes 0..j as one number are negative (the lane above owes them one) when this lane is
      // negative, or zero with the lanes below negative.
      borrow = lane[31] || (lane == 32'd0 && borrow);
      base = e == 0 ? desc_init : acc[xj*32+:32];
      accn[xj*32+:32] = base + lane;
    end
  end

  wire last_w = e == ecount - 1;
  wire [PW:0] next_p0 = {1'b0, p0} + lanes;
  wire last_group = next_p0 >= npos;
  wire last_desc = {1'b0, d} == ndesc - 1;
  wire group_end = empty || (dlast && last_w);

  // The accumulators of a finished lane group go to the output memory at the clock edge that
  // ends the group (no write-back cycle).
  assign out_we = st == RUN && group_end;
  assign out_ch = ch;
  assign out_p0 = p0;
  assign out_count = last_group ? npos - {1'b0, p0} : lanes;
  assign out_data = empty ? {LMAX{desc_init}} : accn;

  always @(posedge clk) begin
    if (rst) begin
      st <= IDLE;
    end else if (start) begin
      st <= ndesc == 0 ? DONE : RUN;
      d <= 0;
      p0 <= 0;
      e <= 0;
      wstart <= 1'b1;
      bi <= 0;
    end else if (st == RUN) begin
      P <= Pn;
      r <= rnext;
      if (dlast) acc <= accn;
      if (group_end) begin
        e <= 0;
        wstart <= 1'b1;
        bi <= 0;
        if (last_group) begin
          p0 <= 0;
          if (last_desc) st <= DONE;
          else d <= d + 1'b1;
        end else begin
          p0 <= next_p0[PW-1:0];
        end
      end else if (dlast) begin
        e <= e + 1'b1;
        wstart <= 1'b1;
        bi <= 0;
      end else begin
        wstart <= 1'b0;
        bi <= bi + 1'b1;
      end
    end
  end

`ifdef SQ_ACTIVITY
  // Switching activity (simulation only): bit flips of the datapath's registers and of the
  // operand buses it reads, per clock — the energy proxy of docs/hardware.md.
  reg [LMAX*AMAX-1:0] act_q;
  reg [KW+WMAX-1:0] ent_q;
  always @(posedge clk) begin
    if (rst || start) begin
      activity <= 64'd0;
    end else if (st == RUN) begin
      activity <= activity + 64'($countones(P ^ Pn))
                + 64'($countones(acc ^ (dlast ? accn : acc)))
                + 64'($countones(act_data ^ act_q)) + 64'($countones(ent_data ^ ent_q));
    end
    act_q <= act_data;
    ent_q <= ent_data;
  end
`endif
endmodule
